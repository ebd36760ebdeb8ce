"""Persisting a :class:`MetaResult` as a Zarr v3 group, and reopening it lazily.

Layout (one Zarr group, readable with plain xarray/zarr; JSON and arrays only, never pickle)::

    <root>/                 attrs["nimare_dask"]: format, format_version, complete, grid,
                            description, references, estimator, corrector, diagnostics,
                            maps, tables, null_distributions (names), created, library_version
    <root>/maps/            xarray Dataset, one float32 variable per map, dim ``voxel``
    <root>/tables/table_<i> xarray Dataset per table: columns as variables ``col_<j>`` over dim
                            ``row`` (attrs: original name and dtype); object/string columns as
                            JSON text per cell; a non-trivial index as variable ``index``
    <root>/nulls/           xarray Dataset, variable ``null_<i>`` per null distribution
    <root>/inputs/<name>/   optional (``attrs["inputs"]`` lists them): the inputs the estimator
                            was fitted on, so that a reopened result can be corrected by Monte
                            Carlo or diagnosed; ``studyset``, ``studyset1``, ``studyset2`` are
                            complete studyset stores (:func:`~nimare_dask.studyset.open_studyset`
                            opens them), ``mask1``/``mask2`` (ALESubtraction's inference masks)
                            an xarray Dataset with the boolean variable ``mask`` over ``voxel``.
                            Results written without inputs (or before they were kept) open as
                            before; only what needs the inputs says they are missing.

The write is atomic as for studyset stores (:mod:`nimare_dask.storage`): a new version under its
own prefix, published by a pointer object written last, on local disk and object stores alike.
In-memory maps are written from this process (no graph); lazy maps are written chunk by chunk by
the tasks that compute them when the workers can reach the destination, else through the client.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import zarr

from nimare_dask import storage
from nimare_dask.results.metaresult import MetaResult
from nimare_dask.space import Grid, get_grid
from nimare_dask.storage import Location, VersionedStore
from nimare_dask.studyset.store import (
    StoreError,
    _as_store_error,
    _json_default,
    merge_storage_options,
)

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "open_result", "write_result"]

FORMAT_NAME = "nimare_dask.result"
#: 2: versioned layout published by a pointer object (``storage/README.md``).
FORMAT_VERSION = 2
#: Voxels per Zarr chunk of a map (4 chunks for the 2 mm grid).
MAP_CHUNK = 65536


# --------------------------------------------------------------------------- tables
def _json_cells(values: Any) -> np.ndarray:
    def enc(v: Any) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT:
            return "null"
        return json.dumps(v, default=_json_default)

    return np.array([enc(v) for v in values], dtype=object)


def _column_variable(values: pd.Series | pd.Index, name: Any) -> xr.Variable:
    dtype = values.dtype
    attrs = {"name": json.dumps(name, default=_json_default), "dtype": str(dtype)}
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf":
        return xr.Variable(("row",), np.asarray(values), attrs=attrs)
    attrs["encoding"] = "json"
    return xr.Variable(("row",), _json_cells(list(values)), attrs=attrs)


def _decode_column(var: xr.DataArray) -> tuple[Any, pd.Series]:
    name = json.loads(var.attrs["name"])
    if isinstance(name, list):
        name = tuple(name)
    if var.attrs.get("encoding") == "json":
        values = pd.Series([json.loads(str(s)) for s in np.asarray(var.values)], dtype=object)
        try:
            values = values.astype(var.attrs["dtype"])
        except (TypeError, ValueError):
            pass
    else:
        values = pd.Series(np.asarray(var.values))
    return name, values


def _table_to_dataset(name: str, table: pd.DataFrame) -> xr.Dataset:
    if isinstance(table.columns, pd.MultiIndex) or isinstance(table.index, pd.MultiIndex):
        table = table.copy()
    if isinstance(table.index, pd.MultiIndex):
        table = table.reset_index()
    variables = {
        f"col_{j}": _column_variable(table.iloc[:, j], col) for j, col in enumerate(table.columns)
    }
    index = table.index
    trivial = (
        isinstance(index, pd.RangeIndex)
        and index.start == 0
        and index.step == 1
        and index.name is None
    )
    if not trivial:
        variables["index"] = _column_variable(index, index.name)
    return xr.Dataset(
        variables, attrs={"name": name, "n_columns": int(table.shape[1]), "n_rows": len(table)}
    )


def _dataset_to_table(ds: xr.Dataset) -> pd.DataFrame:
    columns = {}
    names = []
    for j in range(int(ds.attrs["n_columns"])):
        col_name, values = _decode_column(ds[f"col_{j}"])
        names.append(col_name)
        columns[j] = values
    table = pd.DataFrame(columns) if columns else pd.DataFrame(index=range(ds.attrs["n_rows"]))
    if names:
        table.columns = (
            pd.Index(names)
            if not all(isinstance(n, tuple) for n in names)
            else (pd.MultiIndex.from_tuples(names))
        )
    if "index" in ds:
        index_name, index_values = _decode_column(ds["index"])
        table.index = pd.Index(index_values, name=index_name)
    return table


# --------------------------------------------------------------------------- write
def write_result(
    result: MetaResult,
    path_or_url: str | Path,
    *,
    overwrite: bool = False,
    inputs: bool = True,
    storage_options: dict | None = None,
    **more_storage_options: Any,
) -> str:
    """Write ``result`` to a Zarr v3 group, atomically (on object stores too).

    Parameters
    ----------
    result : MetaResult
        What to write.
    path_or_url : str or Path
        Destination folder or fsspec URL.
    overwrite : bool
        Replace an existing destination; without it an existing one raises ``StoreError`` and
        is left untouched.
    inputs : bool
        Also write the result's inputs (:meth:`MetaResult.get_inputs`) under ``inputs/``.
    storage_options : dict, optional
        fsspec options for URLs; also accepted as keywords.

    Returns
    -------
    str
        The location. Lazy maps are computed while writing, in one pass.
    """
    opts = merge_storage_options(storage_options, more_storage_options)
    try:
        vs = VersionedStore(Location(path_or_url, opts), FORMAT_NAME, FORMAT_VERSION)
        with vs.transaction(overwrite=overwrite) as tx:
            _write_version(result, tx, inputs=inputs)
    except storage.StoreError as err:
        if isinstance(err, StoreError):
            raise
        raise _as_store_error(err) from err.__cause__
    return vs.location.url


def _write_inputs(result: MetaResult, location: Location) -> dict[str, str]:
    """Write the result's inputs under ``location/inputs``; ``{name: kind}`` of those written."""
    written: dict[str, str] = {}
    for name, value in result.get_inputs().items():
        if name.startswith("studyset"):
            target = location.join("inputs", name)
            # a complete studyset store, read back by open_studyset (one writer, one reader)
            value.to_zarr(target.url, **target.storage_options)
            written[name] = "studyset"
        elif name.startswith("mask"):
            mask = xr.Dataset({"mask": ("voxel", np.asarray(value, dtype=bool))})
            storage.write_dataset(mask, location, group=f"inputs/{name}")
            written[name] = "mask"
    return written


def _write_version(result: MetaResult, tx: storage.Transaction, inputs: bool = True) -> None:
    root = zarr.open_group(tx.zarr_store(), mode="w", zarr_format=3)
    names = result.maps_names
    if names:
        maps = result.maps.copy()
        chunk = min(MAP_CHUNK, result.grid.n_voxels)
        encoding = {name: {"chunks": (chunk,)} for name in maps.data_vars}
        for name, var in list(maps.data_vars.items()):
            if var.chunks is not None:  # lazy: one task per stored chunk
                maps[name] = var.chunk({"voxel": chunk})
            maps[name].encoding = {}
        storage.write_dataset(maps, tx.location, group="maps", encoding=encoding)
    for i, (name, table) in enumerate(result.tables.items()):
        storage.write_dataset(
            _table_to_dataset(name, table), tx.location, group=f"tables/table_{i}"
        )
    if result.null_distributions:
        nulls = {}
        for i, (name, value) in enumerate(result.null_distributions.items()):
            arr = np.asarray(value)
            if arr.dtype == object:
                raise TypeError(f"null distribution {name!r} is not a numeric array")
            dims = tuple(f"null_{i}_dim_{d}" for d in range(arr.ndim))
            nulls[f"null_{i}"] = xr.Variable(dims, arr, attrs={"name": name})
        storage.write_dataset(xr.Dataset(nulls), tx.location, group="nulls")
    stored_inputs = _write_inputs(result, tx.location) if inputs else {}
    from nimare_dask import __version__

    info = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "grid": result.grid.to_attrs(),
        **result._info_json(),
        "maps": names,
        "tables": list(result.tables),
        "null_distributions": list(result.null_distributions),
        "inputs": stored_inputs,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "library_version": __version__,
    }
    info = json.loads(json.dumps(info, default=_json_default))
    root.attrs.update({"nimare_dask": info})
    tx.commit(info)


# --------------------------------------------------------------------------- read
def _dataset(zstore: Any, group: str, chunks: Any) -> xr.Dataset:
    return xr.open_zarr(zstore, group=group, zarr_format=3, consolidated=False, chunks=chunks)


def _resolve_grid(grid: Grid | str | None, stored: dict, loc: str) -> Grid:
    if grid is None:
        grid = Grid.from_attrs(stored)
        if grid is None:
            raise StoreError(
                f"{loc} was written on grid {stored.get('name')!r} ({stored.get('n_voxels')} "
                "voxels), which is not a built-in grid and whose mask the store does not keep; "
                "pass grid= the same mask"
            )
        return grid
    grid = get_grid(grid)
    if grid.fingerprint != stored.get("fingerprint"):
        raise StoreError(
            f"{loc} was written on grid {stored.get('name')!r} ({stored.get('n_voxels')} "
            f"voxels), not on the grid given ({grid.name!r}, {grid.n_voxels} voxels)"
        )
    return grid


def open_result(
    path_or_url: str | Path,
    grid: Grid | str | None = None,
    *,
    chunks: Any = None,
    storage_options: dict | None = None,
    **more_storage_options: Any,
) -> MetaResult:
    """Reopen a result written by :meth:`MetaResult.to_zarr`.

    Parameters
    ----------
    path_or_url : str or Path
        Folder or fsspec URL.
    grid : Grid or str, optional
        Grid to attach (default: the built-in grid the result was written on); must be the
        grid it was written on.
    chunks : dict or str, optional
        Dask chunks for the maps (default: the stored Zarr chunks).
    storage_options : dict, optional
        fsspec options for URLs; also accepted as keywords.

    Returns
    -------
    MetaResult
        Maps lazy (dask-backed); tables and null distributions loaded (small). The estimator
        and corrector objects are not restored: ``estimator_info`` and ``corrector_info``
        hold their class names and parameters. Stored inputs (the studysets the estimator was
        fitted on) are opened on first use (:meth:`MetaResult.get_inputs`); a Monte Carlo
        correction of the reopened result refits the estimator on them.
    """
    opts = merge_storage_options(storage_options, more_storage_options)
    try:
        vs = VersionedStore(Location(path_or_url, opts), FORMAT_NAME, FORMAT_VERSION)
        version, pointer = vs.current()
        zstore = version.zarr_store(read_only=True)
    except storage.StoreError as err:
        raise _as_store_error(err) from err.__cause__
    loc = vs.location.url
    info = dict(pointer.get("info") or {})
    grid = _resolve_grid(grid, info.get("grid", {}), loc)
    chunks = {} if chunks is None else chunks
    maps = _dataset(zstore, "maps", chunks) if info.get("maps") else xr.Dataset()
    maps = maps[[n for n in info.get("maps", []) if n in maps]] if info.get("maps") else maps
    tables = {}
    for i, name in enumerate(info.get("tables", [])):
        ds = _dataset(zstore, f"tables/table_{i}", None).load()
        tables[name] = _dataset_to_table(ds)
    nulls: dict[str, np.ndarray] = {}
    if info.get("null_distributions"):
        ds = _dataset(zstore, "nulls", None).load()
        for i, _name in enumerate(info["null_distributions"]):
            var = ds[f"null_{i}"]
            nulls[var.attrs["name"]] = np.asarray(var.values)
    result = MetaResult(
        estimator=None,
        grid=grid,
        maps=maps,
        tables=tables,
        description=info.get("description", ""),
        references=info.get("references", ""),
        diagnostics=info.get("diagnostics") or [],
        null_distributions=nulls,
    )
    result._estimator_info = info.get("estimator")
    result._corrector_info = info.get("corrector")
    result._stored_inputs = {
        name: (kind, version) for name, kind in (info.get("inputs") or {}).items()
    }
    result.location = loc
    return result


def open_input(result: MetaResult, name: str) -> Any:
    """Open one input stored with a reopened result (see :meth:`MetaResult.get_inputs`).

    Parameters
    ----------
    result : MetaResult
        A result from :func:`open_result` whose store holds ``inputs/<name>``.
    name : str
        ``"studyset"``, ``"studyset1"``, ``"studyset2"``, ``"mask1"`` or ``"mask2"``.

    Returns
    -------
    Studyset or numpy.ndarray
        A studyset opened lazily on the result's grid, or a boolean mask over its voxels.
    """
    from nimare_dask.studyset import open_studyset

    kind, version = result._stored_inputs[name]
    try:
        if kind == "studyset":
            target = version.join("inputs", name)
            return open_studyset(
                target.url, target=result.grid, storage_options=target.storage_options
            )
        if kind == "mask":
            ds = _dataset(version.zarr_store(read_only=True), f"inputs/{name}", None)
            return np.asarray(ds["mask"].values, dtype=bool)
    except storage.StoreError as err:
        if isinstance(err, StoreError):
            raise
        raise _as_store_error(err) from err.__cause__
    raise StoreError(f"{result.location}: input {name!r} has an unknown kind {kind!r}")

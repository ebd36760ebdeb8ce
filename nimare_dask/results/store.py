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

The write is atomic as for studyset stores: built in a hidden sibling and moved into place, with
``complete`` set last, so a crash never leaves a result that opens.
"""

from __future__ import annotations

import datetime as _dt
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import zarr

from nimare_dask.results.metaresult import MetaResult
from nimare_dask.space import Grid, get_grid
from nimare_dask.studyset.store import (
    StoreError,
    _exists,
    _is_url,
    _json_default,
    _move_into_place,
    _remove,
    _zarr_kw,
)

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "open_result", "write_result"]

FORMAT_NAME = "nimare_dask.result"
FORMAT_VERSION = 1
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
    result: MetaResult, path_or_url: str | Path, *, overwrite: bool = False, **storage_options
) -> str:
    """Write ``result`` to a Zarr v3 group, atomically.

    Parameters
    ----------
    result : MetaResult
        What to write.
    path_or_url : str or Path
        Destination folder or fsspec URL.
    overwrite : bool
        Replace an existing destination; without it an existing one raises ``StoreError`` and
        is left untouched.
    **storage_options
        fsspec options for URLs.

    Returns
    -------
    str
        The location. Lazy maps are computed while writing, in one pass.
    """
    loc = str(path_or_url)
    if _exists(loc) and not overwrite:
        raise StoreError(f"{loc} already exists; pass overwrite=True to replace it")
    token = uuid.uuid4().hex[:8]
    if _is_url(loc):
        tmp = f"{loc.rstrip('/')}.tmp-{token}"
    else:
        target = Path(loc).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = str(target.parent / f".{target.name}.tmp-{token}")
    kw = _zarr_kw(tmp, storage_options)
    try:
        group_kw: dict[str, Any] = {"mode": "w", "zarr_format": 3}
        if _is_url(tmp):
            group_kw["storage_options"] = storage_options or None
        root = zarr.open_group(tmp, **group_kw)
        root.attrs.update({"nimare_dask": {"format": FORMAT_NAME, "complete": False}})
        names = result.maps_names
        if names:
            maps = result.maps.chunk({"voxel": min(MAP_CHUNK, result.grid.n_voxels)})
            for var in maps.data_vars.values():
                var.encoding = {}
            maps.to_zarr(tmp, group="maps", **kw)
        for i, (name, table) in enumerate(result.tables.items()):
            _table_to_dataset(name, table).to_zarr(tmp, group=f"tables/table_{i}", **kw)
        if result.null_distributions:
            nulls = {}
            for i, (name, value) in enumerate(result.null_distributions.items()):
                arr = np.asarray(value)
                if arr.dtype == object:
                    raise TypeError(f"null distribution {name!r} is not a numeric array")
                dims = tuple(f"null_{i}_dim_{d}" for d in range(arr.ndim))
                nulls[f"null_{i}"] = xr.Variable(dims, arr, attrs={"name": name})
            xr.Dataset(nulls).to_zarr(tmp, group="nulls", **kw)
        from nimare_dask import __version__

        info = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "complete": True,
            "grid": result.grid.to_attrs(),
            **result._info_json(),
            "maps": names,
            "tables": list(result.tables),
            "null_distributions": list(result.null_distributions),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "library_version": __version__,
        }
        root.attrs.update({"nimare_dask": json.loads(json.dumps(info, default=_json_default))})
        _move_into_place(tmp, loc, overwrite)
    except BaseException:
        _remove(tmp)
        raise
    return loc


# --------------------------------------------------------------------------- read
def _open_group(loc: str, storage_options: dict, path: str | None = None):
    kw: dict[str, Any] = {"mode": "r", "zarr_format": 3}
    if _is_url(loc):
        kw["storage_options"] = storage_options or None
    if path:
        kw["path"] = path
    return zarr.open_group(loc, **kw)


def _dataset(loc: str, group: str, storage_options: dict, chunks: Any) -> xr.Dataset:
    kw: dict[str, Any] = {"group": group, "zarr_format": 3, "consolidated": False}
    kw["chunks"] = chunks
    if _is_url(loc):
        kw["storage_options"] = storage_options
    return xr.open_zarr(loc, **kw)


def _resolve_grid(grid: Grid | str | None, stored: dict, loc: str) -> Grid:
    if grid is None:
        name = stored.get("name")
        grid = get_grid(name if name in ("mni152_2mm", "mni152_1mm") else None)
        if grid.fingerprint != stored.get("fingerprint"):
            raise StoreError(
                f"{loc} was written on grid {name!r} ({stored.get('n_voxels')} voxels), which is "
                "not a built-in grid; pass grid= the same mask"
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
    **storage_options: Any,
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
    **storage_options
        fsspec options for URLs.

    Returns
    -------
    MetaResult
        Maps lazy (dask-backed); tables and null distributions loaded (small). The estimator
        and corrector objects are not restored: ``estimator_info`` and ``corrector_info``
        hold their class names and parameters.
    """
    loc = str(path_or_url)
    if not _exists(loc):
        raise StoreError(f"no result at {loc}")
    try:
        root = _open_group(loc, storage_options)
    except Exception as err:  # zarr raises several types for a non-store folder
        raise StoreError(f"{loc} is not a Zarr v3 group: {err}") from None
    info = dict(root.attrs).get("nimare_dask") or {}
    if info.get("format") != FORMAT_NAME:
        raise StoreError(f"{loc} is not a nimare_dask result (format {info.get('format')!r})")
    if not info.get("complete"):
        raise StoreError(f"{loc} is incomplete (a write was interrupted); write it again")
    if int(info.get("format_version", -1)) > FORMAT_VERSION:
        raise StoreError(
            f"{loc} has result format version {info.get('format_version')}, newer than this "
            f"nimare_dask understands ({FORMAT_VERSION}); upgrade nimare_dask"
        )
    grid = _resolve_grid(grid, info.get("grid", {}), loc)
    chunks = {} if chunks is None else chunks
    maps = _dataset(loc, "maps", storage_options, chunks) if info.get("maps") else xr.Dataset()
    maps = maps[[n for n in info.get("maps", []) if n in maps]] if info.get("maps") else maps
    tables = {}
    for i, name in enumerate(info.get("tables", [])):
        ds = _dataset(loc, f"tables/table_{i}", storage_options, None).load()
        tables[name] = _dataset_to_table(ds)
    nulls: dict[str, np.ndarray] = {}
    if info.get("null_distributions"):
        ds = _dataset(loc, "nulls", storage_options, None).load()
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
    result.location = loc
    return result

"""The Zarr v3 studyset store (layout: ``storage/README.md``).

A store is one Zarr group; every table is a sub-group written with xarray, and derived arrays
(MA maps, decoder feature maps, Monte Carlo checkpoints) live under ``derived/`` with the
parameters they were built from in their attributes.

Writes are atomic: a local store is built in a hidden sibling folder and renamed into place; on
any backend the root attribute ``complete`` is written last, and :func:`open_studyset` refuses
a store without it, so a crash never leaves a half store that opens.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr
import zarr

from nimare_dask.space import Grid
from nimare_dask.studyset.core import Annotations, Studyset, StudysetError

if TYPE_CHECKING:
    pass

FORMAT_NAME = "nimare_dask.studyset"
FORMAT_VERSION = 1

__all__ = ["open_studyset", "write_store", "StudysetStore", "StoreError", "FORMAT_VERSION"]


class StoreError(StudysetError):
    """A store is missing, incomplete, of another format, or would be overwritten."""


def _is_url(loc: str) -> bool:
    return "://" in str(loc) and not str(loc).startswith("file://")


def _exists(loc: str) -> bool:
    if _is_url(loc):
        import fsspec

        fs, path = fsspec.core.url_to_fs(loc)
        return fs.exists(path)
    return Path(loc).exists()


def _remove(loc: str) -> None:
    if _is_url(loc):
        import fsspec

        fs, path = fsspec.core.url_to_fs(loc)
        if fs.exists(path):
            fs.rm(path, recursive=True)
    else:
        shutil.rmtree(loc, ignore_errors=True)


def _str_array(values) -> np.ndarray:
    return np.array(
        ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values],
        dtype=object,
    )


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _zarr_kw(loc: str, storage_options: dict) -> dict:
    """Keyword arguments of ``xr.Dataset.to_zarr`` for one sub-group of a store at ``loc``."""
    kw = {"mode": "a", "zarr_format": 3, "consolidated": False}
    if _is_url(loc):
        kw["storage_options"] = storage_options or None
    return kw


def _write_tables(ss: Studyset, loc: str, storage_options: dict) -> None:
    kw = _zarr_kw(loc, storage_options)
    a = ss._analyses
    analyses = xr.Dataset(
        {
            "id": ("analysis", _str_array(a["id"])),
            "study_id": ("analysis", _str_array(a["study_id"])),
            "contrast_id": ("analysis", _str_array(a["contrast_id"])),
            "study_name": ("analysis", _str_array(a["study_name"])),
            "analysis_name": ("analysis", _str_array(a["analysis_name"])),
            "sample_size": ("analysis", a["sample_size"].to_numpy(dtype=np.float64)),
            "focus_offset": ("analysis_edge", ss.focus_offsets().astype(np.int64)),
        }
    )
    analyses.to_zarr(loc, group="analyses", **kw)
    p = ss._points
    space_codes, space_labels = pd.factorize(p["space"].astype(object), use_na_sentinel=False)
    points = xr.Dataset(
        {
            "analysis": ("point", ss.focus_rows().astype(np.int32)),
            "x": ("point", p["x"].to_numpy(np.float64)),
            "y": ("point", p["y"].to_numpy(np.float64)),
            "z": ("point", p["z"].to_numpy(np.float64)),
            "space_code": ("point", space_codes.astype(np.int8)),
            "voxel": ("point", ss.focus_voxels().astype(np.int32)),
        },
        attrs={"space_labels": [str(v) for v in space_labels]},
    )
    points.to_zarr(loc, group="points", **kw)
    meta_cols = [c for c in ss._metadata.columns if c != "id"]
    records = ss._metadata[meta_cols].to_dict(orient="records")
    meta_json = [
        json.dumps({k: v for k, v in r.items() if not _is_missing(v)}, default=_json_default)
        for r in records
    ]
    xr.Dataset({"json": ("analysis", np.array(meta_json, dtype=object))}).to_zarr(
        loc, group="metadata", **kw
    )
    for name, cols in (("images", ["id", "type", "path"]), ("texts", ["id", "type", "text"])):
        df = getattr(ss, f"_{name}")
        ds = xr.Dataset({c: ("row", _str_array(df[c])) for c in cols})
        ds.to_zarr(loc, group=name, **kw)
    ann = ss._annotations
    if ann is not None:
        labels = ("label", _str_array(ann.labels))
        if ann.is_sparse:
            m = sp.csr_matrix(ann.values)
            m.sort_indices()
            ds = xr.Dataset(
                {
                    "label_name": labels,
                    "data": ("nnz", m.data.astype(np.float32)),
                    "indices": ("nnz", m.indices.astype(np.int32)),
                    "indptr": ("analysis_edge", m.indptr.astype(np.int64)),
                },
                attrs={"layout": "csr", "shape": list(m.shape)},
            )
        else:
            vals = np.asarray(ann.values, dtype=np.float32)
            ds = xr.Dataset(
                {"label_name": labels, "values": (("analysis", "label"), vals)},
                attrs={"layout": "dense", "shape": list(vals.shape)},
            )
            ds["values"].encoding["chunks"] = (
                max(1, min(len(vals), 4096)),
                max(1, min(vals.shape[1], 512)),
            )
        ds.to_zarr(loc, group="annotations", **kw)


def _is_missing(v) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and np.isnan(v):
        return True
    return False


def write_store(
    ss: Studyset, path_or_url: str | Path, *, overwrite: bool = False, **storage_options
) -> str:
    """Write ``ss`` as a Zarr v3 store, atomically.

    Parameters
    ----------
    ss : Studyset
        What to write.
    path_or_url : str or Path
        Destination folder or fsspec URL.
    overwrite : bool
        Replace an existing store. Without it, an existing destination raises
        :class:`StoreError` and is left untouched.

    Returns
    -------
    str
        The store location.
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
    try:
        root = (
            zarr.open_group(tmp, mode="w", zarr_format=3, storage_options=storage_options or None)
            if _is_url(tmp)
            else zarr.open_group(tmp, mode="w", zarr_format=3)
        )
        root.attrs.update({"nimare_dask": {"format": FORMAT_NAME, "complete": False}})
        _write_tables(ss, tmp, storage_options)
        from nimare_dask import __version__

        root.attrs.update(
            {
                "nimare_dask": {
                    "format": FORMAT_NAME,
                    "format_version": FORMAT_VERSION,
                    "complete": True,
                    "fingerprint": ss.fingerprint,
                    "n_analyses": len(ss),
                    "n_foci": int(len(ss._points)),
                    "grid": ss.grid.to_attrs(),
                    "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                    "library_version": __version__,
                }
            }
        )
        _move_into_place(tmp, loc, overwrite)
    except BaseException:
        _remove(tmp)
        raise
    return loc


def _move_into_place(tmp: str, loc: str, overwrite: bool) -> None:
    if _is_url(loc):
        import fsspec

        fs, tpath = fsspec.core.url_to_fs(tmp)
        _, lpath = fsspec.core.url_to_fs(loc)
        if overwrite and fs.exists(lpath):
            fs.rm(lpath, recursive=True)
        fs.mv(tpath, lpath, recursive=True)
        return
    target = Path(loc).resolve()
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        target.rename(old)
    Path(tmp).rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class StudysetStore:
    """An opened store: its location, root attributes and lazy access to its arrays.

    Parameters
    ----------
    location : str
        Folder or fsspec URL.
    storage_options : dict, optional
        Passed to fsspec for URLs.
    """

    def __init__(self, location: str | Path, storage_options: dict | None = None):
        self.location = str(location)
        self.storage_options = storage_options or {}
        if not _exists(self.location):
            raise StoreError(f"no studyset store at {self.location}")
        try:
            self.root = self._open_group(mode="r")
        except Exception as err:  # zarr raises several types for a non-store folder
            raise StoreError(f"{self.location} is not a Zarr v3 store: {err}") from None
        info = dict(self.root.attrs).get("nimare_dask") or {}
        if info.get("format") != FORMAT_NAME:
            raise StoreError(f"{self.location} is not a nimare_dask studyset store")
        if not info.get("complete"):
            raise StoreError(f"{self.location} is incomplete (a write was interrupted); rebuild it")
        if int(info.get("format_version", -1)) > FORMAT_VERSION:
            raise StoreError(
                f"{self.location} has format version {info.get('format_version')}, newer than "
                f"this nimare_dask understands ({FORMAT_VERSION}); upgrade nimare_dask"
            )
        self.info = info

    def _open_group(self, mode: str = "r", path: str | None = None):
        kw = {"mode": mode, "zarr_format": 3}
        if _is_url(self.location):
            kw["storage_options"] = self.storage_options or None
        if path:
            kw["path"] = path
        return zarr.open_group(self.location, **kw)

    def dataset(self, group: str, chunks: dict | str | None = None) -> xr.Dataset:
        """Open a sub-group as a dask-backed :class:`xarray.Dataset` (lazy).

        ``chunks=None`` uses the chunks on disk.
        """
        return self._open_dataset(group, {} if chunks is None else chunks)

    def table(self, group: str) -> xr.Dataset:
        """Read a small sub-group eagerly (numpy-backed, no dask graph)."""
        return self._open_dataset(group, None).load()

    def _open_dataset(self, group: str, chunks) -> xr.Dataset:
        kw = {"group": group, "zarr_format": 3, "consolidated": False, "chunks": chunks}
        if _is_url(self.location):
            kw["storage_options"] = self.storage_options
        return xr.open_zarr(self.location, **kw)

    def has(self, group: str) -> bool:
        """True if the store holds this sub-group."""
        try:
            self._open_group(path=group)
            return True
        except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError):
            return False
        except Exception:
            return False

    @property
    def grid_attrs(self) -> dict:
        """The grid description the store was written with."""
        return self.info["grid"]

    def __repr__(self) -> str:
        return (
            f"StudysetStore({self.location!r}, {self.info.get('n_analyses')} analyses, "
            f"format {self.info.get('format_version')})"
        )


def _strs(arr) -> np.ndarray:
    return np.asarray(arr).astype(object)


def open_studyset(
    path_or_url: str | Path,
    *,
    target: str | Grid | None = None,
    chunks: dict | str | None = "auto",
    **storage_options,
) -> Studyset:
    """Open a studyset store.

    Only the small tables (analyses, foci, metadata, annotations' sparse structure) are read;
    derived arrays stay on disk and are opened lazily (:attr:`Studyset.store`).

    Parameters
    ----------
    path_or_url : str or Path
        Folder or fsspec URL of a store written by :meth:`Studyset.to_zarr`.
    target : str or Grid, optional
        Voxel grid (default: the store's grid if it is a built-in one, else MNI152 2 mm).
    chunks : dict or "auto"
        Dask chunks for lazily opened arrays.

    Returns
    -------
    Studyset
        With ``.store`` set to the opened :class:`StudysetStore`.
    """
    store = StudysetStore(path_or_url, storage_options)
    a = store.table("analyses")
    analyses = pd.DataFrame(
        {
            "id": _strs(a["id"].values),
            "study_id": _strs(a["study_id"].values),
            "contrast_id": _strs(a["contrast_id"].values),
            "study_name": _strs(a["study_name"].values),
            "analysis_name": _strs(a["analysis_name"].values),
            "sample_size": a["sample_size"].values.astype(float),
        }
    )
    p = store.table("points")
    ids = analyses["id"].to_numpy()
    points = pd.DataFrame(
        {
            "id": ids[p["analysis"].values] if len(ids) else np.array([], dtype=object),
            "x": p["x"].values,
            "y": p["y"].values,
            "z": p["z"].values,
            "space": np.asarray(p.attrs.get("space_labels", []) or [""], dtype=object)[
                p["space_code"].values
            ],
        }
    )

    def load_metadata() -> pd.DataFrame:
        m = store.table("metadata")
        records = [json.loads(s) for s in _strs(m["json"].values)]
        metadata = pd.DataFrame(records) if records else pd.DataFrame()
        metadata.insert(0, "id", ids)
        return metadata

    tables = {}
    for name, cols in (("images", ["id", "type", "path"]), ("texts", ["id", "type", "text"])):
        ds = store.table(name)
        tables[name] = (
            pd.DataFrame({c: _strs(ds[c].values) for c in cols})
            if ds.sizes.get("row", 0)
            else pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
        )
    annotations = None
    if store.has("annotations"):
        ds = store.table("annotations")
        labels = list(_strs(ds["label_name"].values))
        if ds.attrs.get("layout") == "csr":
            shape = tuple(ds.attrs["shape"])
            vals = sp.csr_matrix(
                (ds["data"].values, ds["indices"].values, ds["indptr"].values), shape=shape
            )
        else:
            vals = ds["values"].values
        annotations = Annotations(vals, labels)
    grid = target
    if grid is None:
        name = store.grid_attrs.get("name", "mni152_2mm")
        grid = name if name in ("mni152_2mm", "mni152_1mm") else "mni152_2mm"
    ss = Studyset.__new__(Studyset)
    ss._set_tables(
        analyses,
        points,
        load_metadata,
        annotations,
        tables["images"],
        tables["texts"],
        _grid(grid),
    )
    if ss.grid.fingerprint != store.grid_attrs.get("fingerprint") and target is None:
        raise StoreError(
            f"{store.location} was written on grid {store.grid_attrs.get('name')!r}, which is "
            "not a built-in grid; pass target= the same mask"
        )
    ss.store = store
    return ss


def _grid(target) -> Grid:
    from nimare_dask.space import get_grid

    return get_grid(target)

"""The Zarr v3 studyset store (layout: ``storage/README.md``).

A store is one Zarr group; every table is a sub-group written with xarray, and derived arrays
(MA maps, decoder feature maps, Monte Carlo checkpoints) live under ``derived/`` with the
parameters they were built from in their attributes.

Writes go through :mod:`nimare_dask.storage`: a new version is written under its own prefix and
published by one small pointer object written last, on local disk and object stores alike, so a
reader sees the old store or the new one and a crash never leaves a half store that opens.
Derived arrays are versioned stores of their own under ``<store>/derived/<kind>/<key>``.

Images (format 2, optional group ``image_data``): one ``(analysis, voxel)`` float32 array per
image type over the grid's in-mask voxels, chunked by analysis and voxel
(:data:`IMAGE_CHUNKS`), resampled to the grid as NiMARE does; **NaN marks every unusable
value** (no image of that type, NaN, inf or exactly 0 in the image; NiMARE's ``_usable``), and
a boolean ``has_<type>`` per analysis says which analyses had an image of that type. Stores
without the group (older writes) open as before; their images are read from the files.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr
import zarr

from nimare_dask import storage
from nimare_dask.space import Grid
from nimare_dask.storage import Location, VersionedStore
from nimare_dask.studyset.core import Annotations, Studyset, StudysetError
from nimare_dask.studyset.images import (
    ImageArrays,
    ImageError,
    available_image_types,
    has_image,
    image_arrays,
    image_matrix,
)

FORMAT_NAME = "nimare_dask.studyset"
#: 2: versioned layout published by a pointer object (``storage/README.md``).
FORMAT_VERSION = 2
#: Sub-group of the image arrays.
IMAGE_GROUP = "image_data"
#: Default ``(analyses, voxels)`` chunks of stored image arrays (2 MiB of float32).
IMAGE_CHUNKS = (16, 32768)

__all__ = [
    "FORMAT_VERSION",
    "IMAGE_CHUNKS",
    "ImagesNotStoredWarning",
    "StoreError",
    "StudysetStore",
    "open_studyset",
    "write_store",
]


class StoreError(StudysetError, storage.StoreError):
    """A store is missing, incomplete, of another format, or would be overwritten."""


def _as_store_error(err: storage.StoreError) -> StoreError:
    out = StoreError(str(err))
    out.__cause__ = err
    return out


def merge_storage_options(storage_options: dict | None, extra: dict) -> dict:
    """``storage_options=`` and fsspec options given as keywords, as one dict."""
    opts = dict(storage_options or {})
    opts.update(extra)
    return opts


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


def _write_tables(ss: Studyset, loc: Location) -> None:
    def write(ds: xr.Dataset, group: str, encoding: dict | None = None) -> None:
        storage.write_dataset(ds, loc, group=group, encoding=encoding)

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
    write(analyses, "analyses")
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
    write(points, "points")
    meta_cols = [c for c in ss._metadata.columns if c != "id"]
    records = ss._metadata[meta_cols].to_dict(orient="records")
    meta_json = [
        json.dumps({k: v for k, v in r.items() if not _is_missing(v)}, default=_json_default)
        for r in records
    ]
    write(xr.Dataset({"json": ("analysis", np.array(meta_json, dtype=object))}), "metadata")
    for name, cols in (("images", ["id", "type", "path"]), ("texts", ["id", "type", "text"])):
        df = getattr(ss, f"_{name}")
        ds = xr.Dataset({c: ("row", _str_array(df[c])) for c in cols})
        write(ds, name)
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
            chunks = (max(1, min(len(vals), 4096)), max(1, min(vals.shape[1], 512)))
            ds["values"].encoding["chunks"] = chunks
        write(ds, "annotations")


def _is_missing(v) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and np.isnan(v):
        return True
    return False


class ImagesNotStoredWarning(UserWarning):
    """Image types whose files are all absent were kept as paths only, not as arrays."""


def _local_file(path) -> bool:
    s = str(path)
    if "://" in s and not s.startswith("file://"):
        return False
    return Path(s[len("file://") :] if s.startswith("file://") else s).is_file()


def _image_types_to_store(ss: Studyset, images) -> list[str]:
    """The image types written as arrays (see :func:`write_store`'s ``images``)."""
    import warnings

    if images is False or images is None:
        return []
    available = available_image_types(ss)
    arrs = image_arrays(ss)
    as_arrays = set(arrs.types) if arrs is not None else set()
    if images is True or images == "auto":
        wanted = available
    else:
        wanted = [images] if isinstance(images, str) else list(images)
        unknown = sorted(set(wanted) - set(available))
        if unknown:
            raise ImageError(
                f"images= names type(s) {unknown} that no analysis has; available: {available}"
            )
    table = ss._images
    keep, skipped = [], []
    for imtype in wanted:
        paths = table.loc[(table["type"] == imtype) & table["path"].notna(), ["id", "path"]]
        if arrs is not None and imtype in as_arrays:
            covered = set(arrs.ids[arrs.rows_for(imtype, arrs.ids) >= 0])
            paths = paths[~paths["id"].isin(covered)]
        paths = paths[~paths["path"].astype(str).str.startswith("array:")]
        found = np.array([_local_file(p) for p in paths["path"]], dtype=bool)
        if images == "auto" and len(paths) and not found.any() and imtype not in as_arrays:
            skipped.append(imtype)
            continue
        if not found.all():
            missing = paths[~found]
            raise ImageError(
                f"cannot store images of type {imtype!r}: {len(missing)} file(s) not found, "
                "e.g. "
                + "; ".join(f"analysis {i}: {p}" for i, p in missing.head(3).to_numpy())
                + " (pass images=False to store only their paths)"
            )
        keep.append(imtype)
    if skipped:
        warnings.warn(
            f"image types {skipped}: none of their files exist here, so only their paths were "
            "stored (image_matrix will need the files); pass images=False to silence this",
            ImagesNotStoredWarning,
            stacklevel=3,
        )
    return keep


def _write_images(
    ss: Studyset, loc: Location, types: list[str], chunks, resample_kwargs: dict | None
) -> None:
    from nimare_dask.studyset.images import _norm_chunks, _resample_kwargs

    if not types:
        return
    a, v = _norm_chunks(chunks or IMAGE_CHUNKS, len(ss), ss.grid.n_voxels)
    data, encoding = {}, {}
    for imtype in types:
        arr = image_matrix(ss, imtype, chunks=(a, v), resample_kwargs=resample_kwargs)
        data[imtype] = (("analysis", "voxel"), arr.rechunk((a, v)))
        data[f"has_{imtype}"] = ("analysis", has_image(ss, imtype))
        encoding[imtype] = {"chunks": (a, v)}
    attrs = {
        "types": list(types),
        "resample_kwargs": json.loads(
            json.dumps(_resample_kwargs(resample_kwargs), default=_json_default)
        ),
        "grid_fingerprint": ss.grid.fingerprint,
        "validity": "NaN = unusable (no image of the type, NaN, inf or exactly 0)",
    }
    storage.write_dataset(xr.Dataset(data, attrs=attrs), loc, group=IMAGE_GROUP, encoding=encoding)


def write_store(
    ss: Studyset,
    path_or_url: str | Path,
    *,
    overwrite: bool = False,
    images: bool | str | list[str] = "auto",
    image_chunks: tuple[int, int] | None = None,
    resample_kwargs: dict | None = None,
    storage_options: dict | None = None,
    **more_storage_options: Any,
) -> str:
    """Write ``ss`` as a Zarr v3 store, atomically (on object stores too).

    Parameters
    ----------
    ss : Studyset
        What to write.
    path_or_url : str or Path
        Destination folder or fsspec URL.
    overwrite : bool
        Replace an existing store. Without it, an existing destination raises
        :class:`StoreError` and is left untouched.
    images : "auto", bool or list of str
        Image types stored as ``(analysis, voxel)`` arrays (group ``image_data``).
        ``"auto"``: every type held as arrays or with at least one existing local file; a type
        none of whose files exist keeps its paths only (:class:`ImagesNotStoredWarning`).
        ``True``: every type; a list: those types; ``False``: paths only. A stored type with
        a missing or unreadable file raises :class:`~nimare_dask.studyset.images.ImageError`
        naming the analysis and file, and nothing is published.
    image_chunks : (int, int), optional
        ``(analyses, voxels)`` chunks of the image arrays (default :data:`IMAGE_CHUNKS`).
    resample_kwargs : dict, optional
        nilearn ``resample_to_img`` keywords for images not on the grid (default
        ``clip=True, interpolation="linear"``), recorded in the group's attributes.
    storage_options : dict, optional
        fsspec options for a URL (endpoint, credentials); also accepted as keywords.

    Returns
    -------
    str
        The store location.
    """
    opts = merge_storage_options(storage_options, more_storage_options)
    types = _image_types_to_store(ss, images)
    try:
        vs = VersionedStore(Location(path_or_url, opts), FORMAT_NAME, FORMAT_VERSION)
        with vs.transaction(overwrite=overwrite) as tx:
            root = zarr.open_group(tx.zarr_store(), mode="w", zarr_format=3)
            _write_tables(ss, tx.location)
            _write_images(ss, tx.location, types, image_chunks, resample_kwargs)
            from nimare_dask import __version__

            info = {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "fingerprint": ss.fingerprint,
                "n_analyses": len(ss),
                "n_foci": int(len(ss._points)),
                "grid": ss.grid.to_attrs(),
                "image_types": types,
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "library_version": __version__,
            }
            root.attrs.update({"nimare_dask": info})
            tx.commit(info)
    except storage.StoreError as err:
        if isinstance(err, StoreError):
            raise
        if isinstance(err.__cause__, ImageError):  # a file failed while its task ran
            raise err.__cause__ from None
        raise _as_store_error(err) from err.__cause__
    return vs.location.url


class StudysetStore:
    """An opened store: its location, the published version and lazy access to its arrays.

    Parameters
    ----------
    location : str
        Folder or fsspec URL.
    storage_options : dict, optional
        Passed to fsspec for URLs, for every access (also by Dask workers).
    """

    def __init__(self, location: str | Path, storage_options: dict | None = None):
        try:
            self.versioned = VersionedStore(
                Location(location, storage_options), FORMAT_NAME, FORMAT_VERSION
            )
            self.version, pointer = self.versioned.current()
            self.zarr = self.version.zarr_store(read_only=True)
        except storage.StoreError as err:
            raise _as_store_error(err) from err.__cause__
        self.location = self.versioned.location.url
        self.storage_options = dict(storage_options or {})
        self._derived = storage.DerivedArrays(self.versioned.location)
        self.info = dict(pointer.get("info") or {})

    def _open_group(self, mode: str = "r", path: str | None = None):
        return zarr.open_group(self.zarr, mode="r", zarr_format=3, path=path or "")

    def dataset(self, group: str, chunks: dict | str | None = None) -> xr.Dataset:
        """Open a sub-group as a dask-backed :class:`xarray.Dataset` (lazy).

        ``chunks=None`` uses the chunks on disk.
        """
        return self._open_dataset(group, {} if chunks is None else chunks)

    def table(self, group: str) -> xr.Dataset:
        """Read a small sub-group eagerly (numpy-backed, no dask graph)."""
        return self._open_dataset(group, None).load()

    def _open_dataset(self, group: str, chunks) -> xr.Dataset:
        return xr.open_zarr(
            self.zarr, group=group, zarr_format=3, consolidated=False, chunks=chunks
        )

    def has(self, group: str) -> bool:
        """True if the store's published version holds this sub-group."""
        try:
            self._open_group(path=group)
            return True
        except Exception:  # absent: zarr raises several types
            return False

    def derived(self, kind: str, key: str, format_version: int = 1) -> VersionedStore:
        """The versioned store of a derived array (``derived/<kind>/<key>``)."""
        return self._derived.derived(kind, key, format_version)

    def derived_keys(self, kind: str) -> list[str]:
        """Keys of the derived arrays of one kind that hold a published version."""
        return self._derived.derived_keys(kind)

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
    storage_options: dict | None = None,
    **more_storage_options: Any,
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
        Dask chunks for lazily opened arrays (dense annotations: ``{"analysis": ...,
        "label": ...}``).
    storage_options : dict, optional
        fsspec options for a URL (endpoint, credentials); also accepted as keywords.

    Returns
    -------
    Studyset
        With ``.store`` set to the opened :class:`StudysetStore`.
    """
    store = StudysetStore(path_or_url, merge_storage_options(storage_options, more_storage_options))
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
    ids = analyses["id"].to_numpy()

    def load_points() -> pd.DataFrame:
        p = store.table("points")
        space_labels = np.asarray(p.attrs.get("space_labels", []) or [""], dtype=object)
        return pd.DataFrame(
            {
                "id": ids[p["analysis"].values] if len(ids) else np.array([], dtype=object),
                "x": p["x"].values,
                "y": p["y"].values,
                "z": p["z"].values,
                "space": space_labels[p["space_code"].values],
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

    def load_annotations() -> Annotations | None:
        if not store.has("annotations"):
            return None
        ds = store._open_dataset("annotations", None)  # lazily indexed, nothing read yet
        labels = list(_strs(ds["label_name"].values))
        if ds.attrs.get("layout") == "csr":
            shape = tuple(ds.attrs["shape"])
            ds = ds.load()
            vals = sp.csr_matrix(
                (ds["data"].values, ds["indices"].values, ds["indptr"].values), shape=shape
            )
        else:
            # dask-backed on the chunks asked for: columns are read when used
            vals = ds["values"].chunk(_annotation_chunks(chunks)).data
        return Annotations(vals, labels)

    grid = target
    if grid is None:
        grid = Grid.from_attrs(store.grid_attrs) if store.grid_attrs else _grid("mni152_2mm")
        if grid is None:
            raise StoreError(
                f"{store.location} was written on grid {store.grid_attrs.get('name')!r}, which "
                "is not a built-in grid and whose mask the store does not keep; pass target= "
                "the same mask"
            )
    ss = Studyset.__new__(Studyset)
    ss._set_tables(
        analyses,
        load_points,
        load_metadata,
        load_annotations,
        tables["images"],
        tables["texts"],
        _grid(grid),
    )
    ss.store = store
    if store.has(IMAGE_GROUP):
        ss._image_arrays = _stored_images(store, ids)
    return ss


def _stored_images(store: StudysetStore, ids: np.ndarray) -> ImageArrays:
    """The store's image arrays, dask-backed on their stored chunks (nothing read)."""
    ds = store._open_dataset(IMAGE_GROUP, {})
    types = list(ds.attrs.get("types", []))
    arrays = {t: ds[t].data for t in types}
    present = {t: np.asarray(ds[f"has_{t}"].values, dtype=bool) for t in types}
    return ImageArrays(
        ids,
        arrays,
        present,
        grid_fingerprint=ds.attrs.get("grid_fingerprint", store.grid_attrs.get("fingerprint")),
        source="store",
        resample_kwargs=ds.attrs.get("resample_kwargs"),
    )


def _annotation_chunks(chunks: dict | str | None) -> dict | str:
    """Dask chunks of the dense annotation values from ``open_studyset``'s ``chunks``."""
    if chunks is None:
        return {}
    if isinstance(chunks, str):
        return chunks
    unknown = set(chunks) - {"analysis", "label"}
    if unknown:
        raise ValueError(
            f"chunks= names unknown dimension(s) {sorted(unknown)}; a studyset store's "
            "arrays are chunked over 'analysis' and 'label'"
        )
    return dict(chunks)


def _grid(target) -> Grid:
    from nimare_dask.space import get_grid

    return get_grid(target)

"""MA maps persisted in a studyset store under ``derived/ma/<cache_key>``.

A group is written once, atomically: the maps are computed into a hidden sibling group
(``derived/ma/.tmp-<key>-<token>``), its attributes are marked ``complete``, and the folder
is then moved into place. A reader only uses a group whose attributes say ``complete`` and
whose kernel class, parameters, grid fingerprint and studyset fingerprint all match; anything
else is rebuilt, never reused.

On disk, binary MKDA maps are stored as uint8 indicators (the sphere ``value`` is an
attribute and is applied when reading); ALE and KDA maps as float32.
"""

from __future__ import annotations

import datetime as _dt
import json
import uuid
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr
import zarr

from nimare_dask.studyset.core import Studyset

if TYPE_CHECKING:
    from nimare_dask.kernels.base import KernelTransformer

__all__ = ["cached_ma_maps", "ma_group", "ATTRS_KEY"]

#: Name of the attribute holding the provenance of a stored group.
ATTRS_KEY = "nimare_dask_ma"


def ma_group(key: str) -> str:
    """The store group of the MA maps with this cache key."""
    return f"derived/ma/{key}"


def _fs(store):
    import fsspec

    loc = str(store.location)
    opts = store.storage_options if "://" in loc else {}
    fs, root = fsspec.core.url_to_fs(loc, **(opts or {}))
    return fs, root.rstrip("/")


def _provenance(kernel: KernelTransformer, studyset: Studyset) -> dict:
    return {
        "kernel": type(kernel).__name__,
        "params": json.loads(json.dumps(kernel._params_json(), sort_keys=True)),
        "grid_fingerprint": studyset.grid.fingerprint,
        "studyset_fingerprint": studyset.fingerprint,
        "cache_key": kernel.cache_key(studyset),
    }


def _indicator_encoding(kernel: KernelTransformer) -> bool:
    from nimare_dask.kernels.spheres import MKDAKernel

    return type(kernel) is MKDAKernel


def _open_group(store, path: str, mode: str = "r"):
    kw = {"path": path, "mode": mode, "zarr_format": 3}
    if "://" in str(store.location):
        kw["storage_options"] = store.storage_options or None
    return zarr.open_group(store.location, **kw)


def _read_attrs(store, group: str) -> dict | None:
    try:
        grp = _open_group(store, group)
    except Exception:  # absent or unreadable: zarr raises several types
        return None
    return dict(grp.attrs).get(ATTRS_KEY)


def _matches(info: dict | None, want: dict) -> bool:
    if not info or not info.get("complete"):
        return False
    return all(info.get(k) == v for k, v in want.items())


def _open(store, group: str, info: dict, studyset: Studyset) -> xr.DataArray:
    ds = store.dataset(group, chunks=None)  # on-disk chunks, lazy
    ma = ds["ma"]
    if ma.dtype != np.float32:
        ma = ma.astype(np.float32)
    scale = np.float32(info.get("scale", 1.0))
    if scale != np.float32(1.0):
        ma = ma * scale
    ma = ma.assign_coords(analysis=np.asarray(studyset.ids))
    ma.name = "ma"
    ma.attrs = {
        "kernel": info["kernel"],
        "kernel_params": json.dumps(info["params"], sort_keys=True),
        "grid_fingerprint": info["grid_fingerprint"],
        "studyset_fingerprint": info["studyset_fingerprint"],
        "cache_key": info["cache_key"],
        "store_group": group,
    }
    return ma


def _remove(fs, path: str) -> None:
    if fs.exists(path):
        fs.rm(path, recursive=True)


def _write(kernel: KernelTransformer, studyset: Studyset, sizes, group: str, want: dict):
    store = studyset.store
    fs, root = _fs(store)
    key = group.rsplit("/", 1)[-1]
    tmp_group = f"derived/ma/.tmp-{key}-{uuid.uuid4().hex[:8]}"
    ma = kernel.transform(studyset, return_type="xarray", chunks=sizes)
    per = max(sizes) if len(sizes) and max(sizes) > 0 else 1
    arr = ma.data
    if len(set(arr.chunks[0][:-1])) > 1 or (len(arr.chunks[0]) > 1 and arr.chunks[0][-1] > per):
        arr = arr.rechunk({0: per})
    indicator = _indicator_encoding(kernel)
    if indicator:
        arr = (arr != 0).astype(np.uint8)
    ds = xr.Dataset(
        {"ma": (("analysis", "voxel"), arr)},
        coords={"analysis": np.asarray(studyset.ids).astype(str).astype(object)},
    )
    kw = {"group": tmp_group, "mode": "w", "zarr_format": 3, "consolidated": False}
    if "://" in str(store.location):
        kw["storage_options"] = store.storage_options
    encoding = {"ma": {"chunks": (per, studyset.grid.n_voxels)}}
    info = dict(want, complete=False, encoding="uint8-indicator" if indicator else "float32")
    info["scale"] = float(kernel._scale()) if indicator else 1.0
    tmp_path = f"{root}/{tmp_group}"
    try:
        ds.to_zarr(store.location, encoding=encoding, **kw)
        grp = _open_group(store, tmp_group, mode="r+")
        from nimare_dask import __version__

        info.update(
            complete=True,
            created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            library_version=__version__,
        )
        grp.attrs.update({ATTRS_KEY: info})
        final = f"{root}/{group}"
        if fs.exists(final):
            if _matches(_read_attrs(store, group), want):
                return  # a concurrent writer finished first: keep theirs, drop ours
            _remove(fs, final)  # stale or incomplete: never reused, replaced
        fs.mv(tmp_path, final, recursive=True)
    finally:
        try:
            _remove(fs, tmp_path)
        except Exception:  # pragma: no cover - best effort clean-up
            pass


def cached_ma_maps(kernel: KernelTransformer, studyset: Studyset, sizes) -> xr.DataArray:
    """The studyset's MA maps from its store, written first if absent or stale (lazy read).

    Parameters
    ----------
    kernel : KernelTransformer
    studyset : Studyset
        Must have ``studyset.store`` (from :func:`~nimare_dask.studyset.open_studyset`).
    sizes : tuple of int
        Chunk sizes along ``analysis`` used when writing.

    Returns
    -------
    xarray.DataArray
        ``"ma"`` (analysis, voxel) float32, dask-backed on the stored chunks (lazy).
    """
    store = getattr(studyset, "store", None)
    if store is None:
        raise ValueError(
            "store=True needs a studyset opened from a store (nimare_dask.open_studyset); "
            "this studyset has none (selections such as slice() drop it)"
        )
    want = _provenance(kernel, studyset)
    group = ma_group(want["cache_key"])
    info = _read_attrs(store, group)
    if not _matches(info, want):
        _write(kernel, studyset, sizes, group, want)
        info = _read_attrs(store, group)
        if not _matches(info, want):  # pragma: no cover - a concurrent writer raced us
            raise RuntimeError(f"could not write MA maps to {store.location}/{group}")
    return _open(store, group, info, studyset)

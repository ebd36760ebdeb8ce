"""MA maps persisted in a studyset store under ``derived/ma/<cache_key>``.

Each cache entry is a versioned store of its own (:mod:`nimare_dask.storage`): the maps are
written under a new version prefix (by the tasks that compute them when the workers can reach
the store, else through the client) and published by a pointer object written last, atomic on
object stores too. A reader only uses an entry whose kernel class, parameters, grid fingerprint
and studyset fingerprint all match; anything else is rebuilt, never reused.

On disk, binary MKDA maps are stored as uint8 indicators (the sphere ``value`` is an
attribute and is applied when reading); ALE and KDA maps as float32.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from nimare_dask import storage
from nimare_dask.studyset.core import Studyset

if TYPE_CHECKING:
    from nimare_dask.kernels.base import KernelTransformer

__all__ = ["cached_ma_maps", "ma_group", "ATTRS_KEY"]

#: Name of the attribute holding the provenance of a stored group.
ATTRS_KEY = "nimare_dask_ma"
#: Kind of the derived versioned stores (``derived/ma/<key>``).
KIND = "ma"


def ma_group(key: str) -> str:
    """The store path of the MA maps with this cache key."""
    return f"derived/{KIND}/{key}"


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


def _read_attrs(store, key: str) -> tuple[dict | None, storage.Location | None]:
    try:
        version, pointer = store.derived(KIND, key).current()
    except storage.StoreError:
        return None, None
    return (pointer.get("info") or {}).get(ATTRS_KEY), version


def _matches(info: dict | None, want: dict) -> bool:
    if not info or not info.get("complete"):
        return False
    return all(info.get(k) == v for k, v in want.items())


def _open(version: storage.Location, group: str, info: dict, studyset: Studyset) -> xr.DataArray:
    ds = xr.open_zarr(  # on-disk chunks, lazy
        version.zarr_store(read_only=True), zarr_format=3, consolidated=False, chunks={}
    )
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


def _write(kernel: KernelTransformer, studyset: Studyset, sizes, key: str, want: dict) -> None:
    store = studyset.store
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
    encoding = {"ma": {"chunks": (per, studyset.grid.n_voxels)}}
    from nimare_dask import __version__

    info = dict(
        want,
        complete=True,
        encoding="uint8-indicator" if indicator else "float32",
        scale=float(kernel._scale()) if indicator else 1.0,
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        library_version=__version__,
    )
    # overwrite: a stale entry is replaced, never reused; "keep": a concurrent writer that
    # published first wins and this write is dropped
    with store.derived(KIND, key).transaction(overwrite=True, on_conflict="keep") as tx:
        storage.write_dataset(ds, tx.location, encoding=encoding)
        tx.commit({ATTRS_KEY: info})


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
    key = want["cache_key"]
    info, version = _read_attrs(store, key)
    if not _matches(info, want):
        _write(kernel, studyset, sizes, key, want)
        info, version = _read_attrs(store, key)
        if not _matches(info, want):  # pragma: no cover - a concurrent writer raced us
            raise RuntimeError(f"could not write MA maps to {store.location}/{ma_group(key)}")
    return _open(version, ma_group(key), info, studyset)

"""Decoder feature maps persisted in a studyset store (``derived/decoder/<key>``).

Each set of maps is a versioned store of its own (:mod:`nimare_dask.storage`): written under a
new version prefix by the tasks that compute the maps (or through the client when the workers
cannot reach the store), then published by a pointer object written last, atomically on object
stores too. The pointer's ``info`` records the features, frequency threshold, estimator and
kernel parameters, target image, studyset and grid fingerprints; a later fit with the same
provenance key reuses the maps instead of recomputing them.

Layout of one version: variable ``maps`` (dims ``(feature, voxel)``, float32, chunked
``(feature_chunk, voxel_chunk)``, LZ4-compressed) and ``n_selected`` (studies per feature).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from nimare_dask import storage
from nimare_dask.decode.featuremaps import FeatureMaps, resolve_chunks
from nimare_dask.meta.base import compute
from nimare_dask.space import Grid, get_grid
from nimare_dask.studyset import Studyset, StudysetStore, open_studyset
from nimare_dask.studyset.store import StoreError

#: Where feature maps can live: a studyset store, or derived arrays under any folder or URL.
MapsStore = StudysetStore | storage.DerivedArrays

__all__ = [
    "ATTRS_KEY",
    "decoder_group",
    "list_feature_maps",
    "open_feature_maps",
    "provenance_key",
    "stored_maps",
    "write_feature_maps",
]

#: Key of the provenance in the pointer's ``info``.
ATTRS_KEY = "nimare_dask_decoder"
#: Kind of the derived versioned stores.
KIND = "decoder"


def decoder_group(key: str) -> str:
    """The store path of the feature maps with this key."""
    return f"derived/{KIND}/{key}"


def provenance_key(info: dict) -> str:
    """A 16-hex-digit hash of everything the maps depend on."""
    text = json.dumps(info, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read_info(store: MapsStore, key: str) -> tuple[dict | None, storage.Location | None]:
    try:
        version, pointer = store.derived(KIND, key).current()
    except storage.StoreError:
        return None, None
    return (pointer.get("info") or {}).get(ATTRS_KEY), version


def stored_maps(store: MapsStore, key: str) -> FeatureMaps | None:
    """The published stored maps with this key, or None.

    Returns
    -------
    FeatureMaps or None
        Lazy (dask-backed on the stored chunks).
    """
    info, version = _read_info(store, key)
    if not info or info.get("key") != key:
        return None
    ds = xr.open_zarr(
        version.zarr_store(read_only=True), zarr_format=3, consolidated=False, chunks={}
    )
    maps = ds["maps"]
    names = np.array([str(v) for v in maps["feature"].values], dtype=object)
    maps = maps.assign_coords(feature=names)
    grid = _grid_from_attrs(info.get("grid", {}))
    return FeatureMaps(maps, grid, info, location=f"{store.location}/{decoder_group(key)}")


def _grid_from_attrs(attrs: dict) -> Grid:
    name = attrs.get("name", "mni152_2mm")
    if name in ("mni152_2mm", "mni152_1mm"):
        grid = get_grid(name)
        if grid.fingerprint == attrs.get("fingerprint", grid.fingerprint):
            return grid
    raise ValueError(
        f"feature maps were computed on a custom grid ({name!r}); open them with a studyset "
        "on the same grid"
    )


def write_feature_maps(
    store: MapsStore,
    key: str,
    maps,
    features: Sequence[str],
    info: dict,
    n_selected: np.ndarray | None = None,
    chunks: dict | None = None,
    n_cores: int | None = None,
) -> FeatureMaps:
    """Write feature maps into a store under ``derived/decoder/<key>``, atomically.

    Parameters
    ----------
    store : StudysetStore or DerivedArrays
        The studyset's store (``studyset.store``), or the place given for maps when the
        studyset has none.
    key : str
        Provenance key (:func:`provenance_key`).
    maps : dask.array.Array, numpy.ndarray or callable
        (n_features, n_voxels) float32 maps. A dask array is computed while it is written (one
        pass, memory bounded by its chunks). A callable ``maps(start, stop)`` returning the
        rows ``start:stop`` is called batch by batch (the per-feature fallback).
    features : sequence of str
        Feature names (rows).
    info : dict
        Provenance, stored in the pointer's ``info`` under ``nimare_dask_decoder``.
    n_selected : (n_features,) array, optional
        Studies carrying each feature.
    chunks : dict, optional
        ``{"feature": ..., "voxel": ...}`` of the stored chunks.
    n_cores : int, optional
        Threads of the local scheduler when no Dask scheduler is configured.

    Returns
    -------
    FeatureMaps
        Lazily re-opened from the store.
    """
    n_feat = len(features)
    n_vox = _n_voxels_of(maps, info)
    ch = chunks or resolve_chunks(None, n_feat, n_vox)
    fchunk, vchunk = int(ch["feature"]), int(ch["voxel"])
    coords = {"feature": np.array([str(f) for f in features], dtype=object)}
    nsel = np.zeros(n_feat, np.int64) if n_selected is None else np.asarray(n_selected, np.int64)
    encoding = {
        "maps": {"chunks": (min(fchunk, max(1, n_feat)), vchunk), "compressors": (_codec(),)}
    }

    def run(*collections):
        return compute(*collections, n_cores=n_cores)

    from nimare_dask import __version__

    full = dict(info)
    full.update(
        key=key,
        complete=True,
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        library_version=__version__,
        features=list(map(str, features)),
    )
    vs = store.derived(KIND, key)
    # a stale or incomplete entry is replaced, never reused
    with vs.transaction(overwrite=True) as tx:
        if callable(maps) and not isinstance(maps, da.Array | np.ndarray):
            import zarr

            template = da.zeros((n_feat, n_vox), dtype=np.float32, chunks=(fchunk, vchunk))
            ds = xr.Dataset(
                {"maps": (("feature", "voxel"), template), "n_selected": ("feature", nsel)},
                coords=coords,
            )
            zstore = tx.zarr_store()
            ds.to_zarr(
                zstore,
                mode="w",
                compute=False,
                encoding=encoding,
                zarr_format=3,
                consolidated=False,
            )
            target = zarr.open_group(zstore, mode="r+", zarr_format=3)["maps"]
            for a in range(0, n_feat, max(1, fchunk)):
                b = min(n_feat, a + max(1, fchunk))
                target[a:b] = np.asarray(maps(a, b), dtype=np.float32)
        else:
            arr = maps if isinstance(maps, da.Array) else np.asarray(maps, dtype=np.float32)
            if isinstance(arr, da.Array):
                arr = arr.astype(np.float32)
                # every dask chunk must cover whole zarr chunks (except at the ends)
                fc, vc = arr.chunks
                if not (all(c == vchunk for c in vc[:-1]) and vc[-1] <= vchunk):
                    arr = arr.rechunk({1: vchunk})
                if not all(c % fchunk == 0 for c in fc[:-1]):
                    arr = arr.rechunk({0: fchunk})
            ds = xr.Dataset(
                {"maps": (("feature", "voxel"), arr), "n_selected": ("feature", nsel)},
                coords=coords,
            )
            storage.write_dataset(ds, tx.location, encoding=encoding, compute=run)
        tx.commit({ATTRS_KEY: json.loads(json.dumps(full, default=str))})
    out = stored_maps(store, key)
    if out is None:  # pragma: no cover - a concurrent writer raced us
        raise RuntimeError(f"could not write feature maps to {store.location}/{decoder_group(key)}")
    return out


def _codec():
    """LZ4 with byte shuffle: ~1.3x on z maps and fast to decode (transform reads it all)."""
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")


def _n_voxels_of(maps, info: dict) -> int:
    if isinstance(maps, da.Array | np.ndarray):
        return int(maps.shape[1])
    return int(info["grid"]["n_voxels"])


def list_feature_maps(store_or_path, storage_options: dict | None = None) -> pd.DataFrame:
    """The feature-map sets of a store: key, estimator, target image, features, date.

    Parameters
    ----------
    store_or_path : StudysetStore, Studyset (opened from a store), str or Path

    Returns
    -------
    pandas.DataFrame
        One row per published set (eager).
    """
    store = _as_store(store_or_path, storage_options)
    rows = []
    for name in store.derived_keys(KIND):
        info, _ = _read_info(store, name)
        if not info:
            continue
        rows.append(
            {
                "key": name,
                "estimator": (info.get("estimator") or {}).get("class"),
                "target_image": info.get("target_image"),
                "n_features": len(info.get("features", [])),
                "frequency_threshold": info.get("frequency_threshold"),
                "created": info.get("created"),
            }
        )
    columns = ["key", "estimator", "target_image", "n_features", "frequency_threshold", "created"]
    return pd.DataFrame(rows, columns=columns)


def _as_store(obj, storage_options: dict | None = None) -> MapsStore:
    if isinstance(obj, StudysetStore | storage.DerivedArrays):
        return obj
    if isinstance(obj, Studyset):
        if obj.store is None:
            raise ValueError("this studyset was not opened from a store (open_studyset)")
        return obj.store
    if isinstance(obj, str | Path):
        try:
            return open_studyset(obj, storage_options=storage_options).store
        except StoreError:
            maps_root = storage.DerivedArrays(obj, storage_options)
            if maps_root.derived_keys(KIND):  # a decoder's maps_store (no studyset)
                return maps_root
            raise
    raise TypeError(f"expected a store, a studyset opened from one, or a path; got {type(obj)}")


def open_feature_maps(
    store_or_path, key: str | None = None, storage_options: dict | None = None
) -> FeatureMaps:
    """Open feature maps stored by a decoder fit (lazily), e.g. from a shared store.

    Parameters
    ----------
    store_or_path : StudysetStore, Studyset, str or Path
        The store (a local folder or an fsspec URL) or a studyset opened from it, or the
        ``maps_store`` a decoder wrote its maps to.
    key : str, optional
        Which set (:func:`list_feature_maps`); may be omitted when the store holds one.
    storage_options : dict, optional
        fsspec options for a URL.

    Returns
    -------
    FeatureMaps
        Dask-backed on the stored chunks (lazy).
    """
    store = _as_store(store_or_path, storage_options)
    if key is None:
        table = list_feature_maps(store)
        if table.empty:
            raise KeyError(f"{store.location} holds no decoder feature maps")
        if len(table) > 1:
            raise KeyError(
                f"{store.location} holds {len(table)} sets of feature maps; pass key= one of "
                f"{table['key'].tolist()} (see list_feature_maps)"
            )
        key = str(table["key"].iloc[0])
    maps = stored_maps(store, key)
    if maps is None:
        raise KeyError(f"no published feature maps with key {key!r} in {store.location}")
    return maps

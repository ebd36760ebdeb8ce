"""Checkpoints of finished Monte Carlo blocks in a Zarr v3 group.

Layout::

    <checkpoint>/                 root attrs: {"nimare_dask_montecarlo": manifest}
        blocks/<start>-<stop>/    one group per finished block; attrs {"complete": true}
            <output name>         one array per output of the block function

The manifest records what the blocks were computed from (:func:`manifest`): the caller's
fingerprint of its inputs, ``n_iters``, the block size, the seed, the stream and the engine
version. A run that finds a checkpoint with a different manifest refuses to touch it
(:class:`CheckpointMismatchError`). A block counts only once its ``complete`` attribute is
written, after its arrays, so a crash in the middle of a write leaves a block that is ignored
and recomputed, never a half block that is read: appending blocks needs no rename, so this holds
on object stores too. The location (a folder or an fsspec URL with its ``storage_options``) is
opened through :mod:`nimare_dask.storage`, like every other store.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from nimare_dask.storage import Location, StoreError

__all__ = ["BlockCheckpoint", "CheckpointMismatchError", "manifest"]

#: Root attribute holding the manifest.
MANIFEST_ATTR = "nimare_dask_montecarlo"


class CheckpointMismatchError(ValueError):
    """A checkpoint was written for other inputs or parameters than the current run's."""


def manifest(
    *,
    inputs_fingerprint: str,
    n_iters: int,
    block_size: int,
    random_state: int,
    stream: str,
    engine_version: str,
) -> dict[str, Any]:
    """The JSON-able description of a run that its checkpoint must match.

    Returns
    -------
    dict
        ``random_state`` is stored as a string (it may exceed 2**63).
    """
    return {
        "inputs_fingerprint": str(inputs_fingerprint),
        "n_iters": int(n_iters),
        "block_size": int(block_size),
        "random_state": str(int(random_state)),
        "stream": str(stream),
        "engine_version": str(engine_version),
    }


class BlockCheckpoint:
    """A Zarr v3 group holding the finished blocks of one Monte Carlo run.

    Parameters
    ----------
    location : str, pathlib.Path or zarr.Group
        Local folder, fsspec URL (``s3://...``, ``memory://...``) or an open group.
    storage_options : dict, optional
        fsspec options for a URL.
    """

    def __init__(self, location: str | Path | zarr.Group, storage_options: dict | None = None):
        if isinstance(location, zarr.Group):
            self._root = location
            self.location = str(location.store_path)
        else:
            loc = Location(location, storage_options)
            try:
                self._root = zarr.open_group(loc.zarr_store(), mode="a", zarr_format=3)
            except StoreError:
                raise
            except Exception as err:  # zarr raises several types for a non-Zarr folder
                raise CheckpointMismatchError(
                    f"cannot open {loc.url} as a Zarr v3 checkpoint group: {err}"
                ) from err
            self.location = loc.url

    # ------------------------------------------------------------------ manifest
    def recorded(self) -> dict[str, Any] | None:
        """The manifest stored in the checkpoint, or None for a new (empty) one.

        Raises
        ------
        CheckpointMismatchError
            If the group holds other data but no manifest.
        """
        attrs = self._root.attrs.asdict()
        if MANIFEST_ATTR in attrs:
            return dict(attrs[MANIFEST_ATTR])
        if attrs or any(True for _ in self._root.keys()):
            raise CheckpointMismatchError(
                f"{self.location} is not empty and is not a nimare_dask Monte Carlo checkpoint; "
                "choose another checkpoint location"
            )
        return None

    def claim(self, expected: Mapping[str, Any]) -> None:
        """Record ``expected`` in a new checkpoint, or check it against the recorded one.

        Raises
        ------
        CheckpointMismatchError
            Naming every field that differs.
        """
        recorded = self.recorded()
        if recorded is None:
            self._root.attrs[MANIFEST_ATTR] = dict(expected)
            self._root.require_group("blocks")
            return
        diffs = [
            f"{k}: checkpoint has {recorded.get(k)!r}, this run has {expected[k]!r}"
            for k in expected
            if recorded.get(k) != expected[k]
        ]
        if diffs:
            raise CheckpointMismatchError(
                f"the checkpoint at {self.location} was written by a different run ("
                + "; ".join(diffs)
                + "). Use another checkpoint location, or delete this one to start afresh."
            )

    # ------------------------------------------------------------------ blocks
    def load_blocks(self) -> dict[tuple[int, int], dict[str, np.ndarray]]:
        """Every complete block, keyed by ``(start, stop)``; incomplete ones are skipped."""
        if "blocks" not in self._root:
            return {}
        out: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        for name, grp in self._root["blocks"].groups():
            if not grp.attrs.get("complete", False):
                continue
            start, _, stop = name.partition("-")
            out[(int(start), int(stop))] = {k: np.asarray(a[...]) for k, a in grp.arrays()}
        return out

    def write_block(self, start: int, stop: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Write one finished block: its arrays first, then its ``complete`` mark."""
        blocks = self._root.require_group("blocks")
        grp = blocks.create_group(f"{int(start)}-{int(stop)}", overwrite=True)
        for key, arr in arrays.items():
            arr = np.ascontiguousarray(arr)
            grp.create_array(
                key, data=arr, chunks=arr.shape if arr.ndim and all(arr.shape) else "auto"
            )
        grp.attrs["complete"] = True

    def __repr__(self) -> str:
        return f"BlockCheckpoint({self.location!r})"

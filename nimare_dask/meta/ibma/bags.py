"""The liberal mask of NiMARE's IBMA estimators, per voxel chunk.

NiMARE fits one model per *bag*: the voxels whose valid images (finite and non-zero in every
required input) are the same set. A voxel's result depends only on its bag's image set and its
own values, so a voxel chunk can be split into bags on its own: its columns are grouped by their
validity pattern (packed into bytes and sorted once, as NiMARE does for the whole map) and each
pattern is fitted as one array expression over its columns. The same pattern met in another
chunk gives the same numbers, so any voxel chunking gives the same maps.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["MIN_STUDIES", "iter_bags", "usable"]

#: Bags covered by fewer images cannot be fitted and are dropped (NiMARE's MIN_STUDY_THRESH).
MIN_STUDIES = 2


def usable(values: np.ndarray) -> np.ndarray:
    """Finite and non-zero: NiMARE's test of a usable image value."""
    return np.isfinite(values) & (values != 0)


def iter_bags(valid: np.ndarray) -> Iterator[tuple[bytes, np.ndarray, np.ndarray]]:
    """Yield ``(key, rows, cols)`` for every bag of a chunk with at least two images.

    Parameters
    ----------
    valid : numpy.ndarray
        ``(n_images, n_voxels)`` boolean validity of a voxel chunk (dropped images all False).

    Yields
    ------
    key : bytes
        The packed validity pattern (identifies the bag across chunks).
    rows : numpy.ndarray
        Image indices of the bag.
    cols : numpy.ndarray
        Voxel indices (within the chunk) of the bag.
    """
    if valid.shape[1] == 0:
        return
    keys = np.ascontiguousarray(np.packbits(valid, axis=0).T)
    void = keys.view(np.dtype((np.void, keys.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(void, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(first.size + 1))
    for b, col0 in enumerate(first):
        rows = np.flatnonzero(valid[:, col0])
        if rows.size < MIN_STUDIES:
            continue
        cols = order[bounds[b] : bounds[b + 1]]
        yield keys[col0].tobytes(), rows, cols

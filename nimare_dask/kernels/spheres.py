"""Sphere kernels: MKDA (union of spheres) and KDA (sum of spheres)."""

from __future__ import annotations

import numpy as np

from nimare_dask.kernels import _numba
from nimare_dask.kernels.base import KernelTransformer, _check_positive
from nimare_dask.kernels.shapes import sphere_offsets

__all__ = ["KDAKernel", "MKDAKernel"]


class KDAKernel(KernelTransformer):
    """KDA modelled-activation maps (Wager et al., 2003, 2004), as in NiMARE 0.22.1.

    Each focus is replaced by a sphere of radius ``r`` mm; an analysis's MA value at a voxel
    is ``value`` times the number of its spheres covering that voxel.

    Parameters
    ----------
    r : float
        Sphere radius in mm (default 10: 515 voxels on the 2 mm grid).
    value : float
        Value of one sphere (default 1).
    memory, memory_level
        NiMARE's joblib caching; no effect here (see :class:`KernelTransformer`).

    Notes
    -----
    The sphere holds the offsets ``-(r // zoom) .. r // zoom`` per axis whose distance
    ``||offset * zoom||`` is at most ``r``. Voxels outside the grid or the mask are dropped.
    ``transform(..., return_type="summary")`` works for KDA too (NiMARE raises there).
    """

    _param_names = ("r", "value")
    _mode = _numba.MODE_ADD

    def __init__(self, r: float = 10, value: float = 1, memory=None, memory_level: int = 0):
        super().__init__(memory=memory, memory_level=memory_level)
        self.r = float(r) if _is_number(r) else r
        self.value = value
        self._validate()

    def _validate(self) -> None:
        name = type(self).__name__
        _check_positive("r", self.r, name)
        _check_positive("value", self.value, name)
        self.r = float(self.r)

    def _scale(self) -> np.float32:
        return np.float32(self.value)

    def _kernel_specs(self, sample_sizes, has_foci, ids):
        return [("sphere", self.r)], np.zeros(len(has_foci), dtype=np.int64)

    @staticmethod
    def _kernel_from_spec(spec, zooms) -> tuple[np.ndarray, np.ndarray]:
        offsets = sphere_offsets(spec[1], zooms)
        return offsets, np.ones(len(offsets), dtype=np.float32)


class MKDAKernel(KDAKernel):
    """MKDA modelled-activation maps (Wager et al., 2007), as in NiMARE 0.22.1.

    Each focus is replaced by a sphere of radius ``r`` mm; an analysis's MA map is the union
    of its spheres: ``value`` wherever at least one sphere covers the voxel, else 0.

    Parameters
    ----------
    r : float
        Sphere radius in mm (default 10: 515 voxels on the 2 mm grid).
    value : float
        Value inside the union (default 1: binary maps).
    memory, memory_level
        NiMARE's joblib caching; no effect here (see :class:`KernelTransformer`).

    Notes
    -----
    ``transform(..., return_type="summary")`` is the sum of the maps: ``value`` times the
    number of analyses covering a voxel. NiMARE's ``summary_array`` casts ``value`` to an
    integer first (2.5 counts as 2), unlike its own dense maps.
    """

    _mode = _numba.MODE_MAX


def _is_number(x) -> bool:
    try:
        float(x)
    except (TypeError, ValueError):
        return False
    return not isinstance(x, bool)

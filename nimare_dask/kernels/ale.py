"""The ALE kernel: a Gaussian per focus, voxel-wise max over an analysis's foci."""

from __future__ import annotations

import numpy as np

from nimare_dask.kernels import _numba
from nimare_dask.kernels.base import KernelTransformer, _check_positive
from nimare_dask.kernels.shapes import ale_fwhm_from_sample_size, ale_kernel
from nimare_dask.studyset.core import Studyset

__all__ = ["ALEKernel"]


class ALEKernel(KernelTransformer):
    """ALE modelled-activation maps (Eickhoff et al., 2009, 2012), as in NiMARE 0.22.1.

    Each focus is replaced by a 3-D Gaussian probability kernel (the product of three
    normalised, truncated discrete 1-D Gaussians, cropped to a cube) and an analysis's MA map
    is the voxel-wise **maximum** over its foci. Kernel voxels outside the grid or the mask
    are dropped.

    Parameters
    ----------
    fwhm : float, optional
        One FWHM (mm) for every analysis.
    sample_size : float, optional
        One sample size for every analysis; the FWHM follows Eickhoff et al. (2009).
        Mutually exclusive with ``fwhm``. With neither, each analysis's own sample size
        (``Studyset.sample_sizes``) sets its FWHM; kernels are built once per distinct
        sample size.
    memory, memory_level
        NiMARE's joblib caching; no effect here (see :class:`KernelTransformer`).

    Notes
    -----
    On 2 mm voxels the maps equal NiMARE's. Two deliberate differences (see
    :mod:`nimare_dask.kernels.shapes`): sigma in voxels is ``FWHM / (2 sqrt(2 ln 2)) / zoom``
    per axis (NiMARE's formula is only right for 2 mm voxels; at 1 mm its kernel is sqrt(2)
    too wide), and kernels wider than ``4 sigma = 15`` voxels are not cut at +-15 voxels.
    """

    _param_names = ("fwhm", "sample_size")
    _mode = _numba.MODE_MAX

    def __init__(
        self,
        fwhm: float | None = None,
        sample_size: float | None = None,
        memory=None,
        memory_level: int = 0,
    ):
        super().__init__(memory=memory, memory_level=memory_level)
        self.fwhm = fwhm
        self.sample_size = sample_size
        self._validate()

    def _validate(self) -> None:
        name = type(self).__name__
        if self.fwhm is not None and self.sample_size is not None:
            raise ValueError(f'{name}: only one of "fwhm" and "sample_size" may be provided')
        if self.fwhm is not None:
            _check_positive("fwhm", self.fwhm, name)
        if self.sample_size is not None:
            _check_positive("sample_size", self.sample_size, name)

    @property
    def uses_study_sample_sizes(self) -> bool:
        """True when each analysis's own sample size sets its kernel."""
        return self.fwhm is None and self.sample_size is None

    def fwhm_for(self, sample_size: float | None = None) -> float:
        """The FWHM (mm) used for an analysis of the given sample size."""
        if self.fwhm is not None:
            return float(self.fwhm)
        n = self.sample_size if self.sample_size is not None else sample_size
        if n is None or not np.isfinite(n):
            raise ValueError("ALEKernel: a sample size is needed to derive the FWHM")
        return float(ale_fwhm_from_sample_size(n))

    def _check_studyset(self, studyset: Studyset) -> None:
        if not self.uses_study_sample_sizes:
            return
        need = studyset.foci_counts() > 0
        bad = need & ~np.isfinite(studyset.sample_sizes)
        if bad.any():
            _raise_missing(studyset.ids[bad])

    def _kernel_specs(self, sample_sizes, has_foci, ids):
        n_rows = len(has_foci)
        if self.fwhm is not None:
            return [("fwhm", float(self.fwhm))], np.zeros(n_rows, dtype=np.int64)
        if self.sample_size is not None:
            return [("n", float(self.sample_size))], np.zeros(n_rows, dtype=np.int64)
        if sample_sizes is None:
            raise ValueError(
                "ALEKernel(fwhm=None, sample_size=None) needs per-analysis sample_sizes; "
                "pass them or set fwhm= or sample_size="
            )
        sample_sizes = np.asarray(sample_sizes, dtype=float)
        bad = has_foci & ~np.isfinite(sample_sizes)
        if bad.any():
            where = np.flatnonzero(bad)
            _raise_missing(
                np.asarray(ids)[where] if ids is not None else [f"row {i}" for i in where]
            )
        row_kid = np.zeros(n_rows, dtype=np.int64)
        if not has_foci.any():
            return [], row_kid
        uniq, inv = np.unique(sample_sizes[has_foci], return_inverse=True)
        row_kid[has_foci] = inv
        return [("n", float(n)) for n in uniq], row_kid

    @staticmethod
    def _kernel_from_spec(spec, zooms) -> tuple[np.ndarray, np.ndarray]:
        kind, x = spec
        if kind == "fwhm":
            return ale_kernel(x, zooms)
        return ale_kernel(zooms=zooms, sample_size=x)


def _raise_missing(ids) -> None:
    ids = [str(i) for i in ids]
    more = f" (and {len(ids) - 10} more)" if len(ids) > 10 else ""
    raise ValueError(
        f"ALEKernel: {len(ids)} analyses with foci have no sample size: {ids[:10]}{more}. "
        "Add 'sample_sizes' to their metadata, or use ALEKernel(fwhm=...) or "
        "ALEKernel(sample_size=...)"
    )

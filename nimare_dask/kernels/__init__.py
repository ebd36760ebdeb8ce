"""Modelled-activation (MA) kernels: ALE, MKDA and KDA maps from coordinates.

Every kernel turns a :class:`~nimare_dask.studyset.Studyset` into MA maps over the in-mask
voxels of its grid, lazily (a Dask graph with one numba task per chunk of analyses) or
eagerly (dense or CSR), and reduces them over analyses without building the dense matrix.
Values match NiMARE 0.22.1's ``meta.kernel`` on 2 mm grids.
"""

from nimare_dask.kernels.ale import ALEKernel
from nimare_dask.kernels.base import DEFAULT_CHUNK_BYTES, KernelTransformer
from nimare_dask.kernels.shapes import (
    KernelBank,
    ale_fwhm_from_sample_size,
    ale_kernel,
    ale_sigma_vox,
    sphere_offsets,
)
from nimare_dask.kernels.spheres import KDAKernel, MKDAKernel

__all__ = [
    "ALEKernel",
    "KDAKernel",
    "MKDAKernel",
    "KernelTransformer",
    "KernelBank",
    "DEFAULT_CHUNK_BYTES",
    "ale_fwhm_from_sample_size",
    "ale_kernel",
    "ale_sigma_vox",
    "sphere_offsets",
]

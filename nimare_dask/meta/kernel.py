"""Modelled-activation kernels, at NiMARE's import path (``nimare.meta.kernel``).

The implementations live in :mod:`nimare_dask.kernels`.
"""

from nimare_dask.kernels import ALEKernel, KDAKernel, KernelTransformer, MKDAKernel

__all__ = ["ALEKernel", "KDAKernel", "KernelTransformer", "MKDAKernel"]

"""Meta-analysis estimators: ALE, ALESubtraction, SCALE, MKDADensity, KDA, MKDAChi2.

Import paths mirror NiMARE's: ``nimare_dask.meta.cbma.ALE``, ``nimare_dask.meta.cbma.ale.ALE``,
``nimare_dask.meta.kernel.ALEKernel``, ``nimare_dask.meta.ALE``.
"""

from nimare_dask.meta import cbma, kernel
from nimare_dask.meta.cbma import ALE, KDA, SCALE, ALESubtraction, MKDAChi2, MKDADensity

__all__ = [
    "ALE",
    "ALESubtraction",
    "KDA",
    "MKDAChi2",
    "MKDADensity",
    "SCALE",
    "cbma",
    "kernel",
]

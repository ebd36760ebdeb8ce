"""Meta-analysis estimators: ALE, ALESubtraction, SCALE, MKDADensity, KDA, MKDAChi2 and the
image-based estimators (DerSimonianLaird, Fishers, Hedges, PermutedOLS, ...).

Import paths mirror NiMARE's: ``nimare_dask.meta.cbma.ALE``, ``nimare_dask.meta.cbma.ale.ALE``,
``nimare_dask.meta.kernel.ALEKernel``, ``nimare_dask.meta.ALE``.
"""

from nimare_dask.meta import cbma, ibma, kernel
from nimare_dask.meta.cbma import (
    ALE,
    KDA,
    SCALE,
    ALESubtraction,
    MKDAChi2,
    MKDADensity,
    StudyWeights,
)
from nimare_dask.meta.ibma import (
    DerSimonianLaird,
    Fishers,
    Hedges,
    PermutedOLS,
    SampleSizeBasedLikelihood,
    Stouffers,
    VarianceBasedLikelihood,
    WeightedLeastSquares,
)

__all__ = [
    "ALE",
    "ALESubtraction",
    "DerSimonianLaird",
    "Fishers",
    "Hedges",
    "KDA",
    "MKDAChi2",
    "MKDADensity",
    "PermutedOLS",
    "SCALE",
    "SampleSizeBasedLikelihood",
    "Stouffers",
    "StudyWeights",
    "VarianceBasedLikelihood",
    "WeightedLeastSquares",
    "cbma",
    "ibma",
    "kernel",
]

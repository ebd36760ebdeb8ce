"""Image-based meta-analysis (NiMARE's ``nimare.meta.ibma``) on (analysis x voxel) Dask arrays.

``Fishers``, ``Stouffers``, ``WeightedLeastSquares``, ``DerSimonianLaird``, ``Hedges``,
``SampleSizeBasedLikelihood``, ``VarianceBasedLikelihood``, ``FixedEffectsHedges`` and
``PermutedOLS`` with NiMARE 0.22.1's parameters, maps and tables.
"""

from nimare_dask.meta.ibma.base import IBMAEstimator
from nimare_dask.meta.ibma.combination import Fishers, Stouffers
from nimare_dask.meta.ibma.likelihood import SampleSizeBasedLikelihood, VarianceBasedLikelihood
from nimare_dask.meta.ibma.permuted_ols import PermutedOLS
from nimare_dask.meta.ibma.regression import (
    DerSimonianLaird,
    FixedEffectsHedges,
    Hedges,
    WeightedLeastSquares,
)

__all__ = [
    "DerSimonianLaird",
    "Fishers",
    "FixedEffectsHedges",
    "Hedges",
    "IBMAEstimator",
    "PermutedOLS",
    "SampleSizeBasedLikelihood",
    "Stouffers",
    "VarianceBasedLikelihood",
    "WeightedLeastSquares",
]

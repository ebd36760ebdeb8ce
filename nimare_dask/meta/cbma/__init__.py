"""Coordinate-based meta-analysis estimators (NiMARE's ``meta.cbma``)."""

from nimare_dask.meta.cbma.ale import ALE
from nimare_dask.meta.cbma.balanced import BalancedALESubtraction
from nimare_dask.meta.cbma.mkda import KDA, MKDAChi2, MKDADensity
from nimare_dask.meta.cbma.scale import SCALE
from nimare_dask.meta.cbma.subtraction import ALESubtraction
from nimare_dask.meta.cbma.weights import StudyWeights

__all__ = [
    "ALE",
    "ALESubtraction",
    "BalancedALESubtraction",
    "KDA",
    "MKDAChi2",
    "MKDADensity",
    "SCALE",
    "StudyWeights",
]

"""Coordinate-based meta-analysis estimators (NiMARE's ``meta.cbma``)."""

from nimare_dask.meta.cbma.ale import ALE, SCALE, ALESubtraction
from nimare_dask.meta.cbma.mkda import KDA, MKDAChi2, MKDADensity

__all__ = ["ALE", "ALESubtraction", "KDA", "MKDAChi2", "MKDADensity", "SCALE"]

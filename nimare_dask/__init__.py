"""nimare_dask: neuroimaging meta-analysis at database scale on Zarr and Dask.

The same science as NiMARE (ALE, MKDA, KDA, MKDAChi2, subtraction, Monte Carlo FWE,
decoding, MACM) with the same numbers, on chunked arrays and lazy Dask graphs.
"""

__version__ = "0.1.0.dev0"

from nimare_dask.space import Grid, get_grid
from nimare_dask.studyset import Studyset, open_studyset

__all__ = ["Grid", "Studyset", "__version__", "get_grid", "open_studyset"]

"""Meta-analysis results: maps over grid voxels, tables, methods text, persistence.

``MetaResult`` holds what an estimator (and correctors) produce; ``open_result`` reopens one
written with ``MetaResult.to_zarr``; ``map_name`` makes every map name.
"""

from nimare_dask.results.correction import Correction
from nimare_dask.results.metaresult import MetaResult
from nimare_dask.results.naming import add_correction, map_name, parse_map_name
from nimare_dask.results.store import open_result

__all__ = [
    "Correction",
    "MetaResult",
    "add_correction",
    "map_name",
    "open_result",
    "parse_map_name",
]

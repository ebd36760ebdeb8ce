"""Fetchers: the public coordinate databases (Neurosynth, NeuroQuery) and NeuroVault collections."""

from nimare_dask.datasets.fetchers import (
    FetchError,
    fetch_neuroquery,
    fetch_neurosynth,
    get_data_dir,
)
from nimare_dask.datasets.neurovault import fetch_neurovault_collection

__all__ = [
    "FetchError",
    "fetch_neuroquery",
    "fetch_neurovault_collection",
    "fetch_neurosynth",
    "get_data_dir",
]
